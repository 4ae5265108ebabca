-- A job that reaches the same state again while that state's event still waits for its first try (pause/resume,
-- cancel/resume in a loop) replaces the waiting event instead of adding one: the loop wrote a row per webhook per
-- round without bound, each later holding a copy of the job, in tables the cron sweeps for every user. Replaced,
-- not skipped: the new row is the newest (events keep their order against other kinds) and gets a fresh window.
-- Only rows nobody has tried or sent by hand: attempts = 0 (a claim counts its attempt first), no payload (a
-- redelivery keeps the bytes it resends), no series (a delivery the user sent by hand); and only for webhooks still
-- subscribed to the event (a waiting event of one that has unsubscribed since is not replaced, so it is kept).
DROP TRIGGER `jobs_webhook_outbox`;--> statement-breakpoint
CREATE TRIGGER `jobs_webhook_outbox` AFTER UPDATE OF `status` ON `jobs`
WHEN NEW.`status` <> OLD.`status` AND NEW.`status` IN ('completed', 'cancelled', 'failed', 'paused')
BEGIN
	DELETE FROM `webhook_deliveries`
	WHERE `webhook_id` IN (SELECT w.`id` FROM `webhooks` w WHERE w.`user_id` = NEW.`user_id`
			AND EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid(w.`events`) THEN w.`events` ELSE '[]' END) e WHERE e.`value` = 'job.' || NEW.`status`))
		AND `job_id` = NEW.`id` AND `event` = 'job.' || NEW.`status`
		-- `+`: not the (status, …) index, which walks every user's pending rows; (webhook_id, job_id, event) finds these.
		AND +`status` = 'pending' AND `attempts` = 0 AND `payload` IS NULL AND `series_started_at` IS NULL;
	INSERT OR IGNORE INTO `webhook_deliveries` (`id`, `webhook_id`, `job_id`, `event`, `occurred_at`, `status`, `attempts`, `next_attempt_at`, `created_at`)
	SELECT lower(hex(randomblob(10))), w.`id`, NEW.`id`, 'job.' || NEW.`status`, NEW.`updated_at`, 'pending', 0, NEW.`updated_at`, NEW.`updated_at`
	FROM `webhooks` w
	WHERE w.`user_id` = NEW.`user_id`
		AND EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid(w.`events`) THEN w.`events` ELSE '[]' END) e WHERE e.`value` = 'job.' || NEW.`status`);
END;
