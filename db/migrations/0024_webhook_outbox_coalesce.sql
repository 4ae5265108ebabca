-- The outbox writes no second event of a kind for a job while one for the same webhook is still waiting for its
-- first try: pause/resume (or cancel/resume) in a loop wrote a row per webhook per round without bound, each later
-- holding a copy of the job, and the cron's sweeps of them are shared by every user. The payload is built when the
-- event is sent, so the waiting one reports the job as it is then; nothing is lost by not writing another.
DROP TRIGGER `jobs_webhook_outbox`;--> statement-breakpoint
CREATE TRIGGER `jobs_webhook_outbox` AFTER UPDATE OF `status` ON `jobs`
WHEN NEW.`status` <> OLD.`status` AND NEW.`status` IN ('completed', 'cancelled', 'failed', 'paused')
BEGIN
	INSERT OR IGNORE INTO `webhook_deliveries` (`id`, `webhook_id`, `job_id`, `event`, `occurred_at`, `status`, `attempts`, `next_attempt_at`, `created_at`)
	SELECT lower(hex(randomblob(10))), w.`id`, NEW.`id`, 'job.' || NEW.`status`, NEW.`updated_at`, 'pending', 0, NEW.`updated_at`, NEW.`updated_at`
	FROM `webhooks` w
	WHERE w.`user_id` = NEW.`user_id`
		AND EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid(w.`events`) THEN w.`events` ELSE '[]' END) e WHERE e.`value` = 'job.' || NEW.`status`)
		AND NOT EXISTS (SELECT 1 FROM `webhook_deliveries` d
			WHERE d.`webhook_id` = w.`id` AND d.`job_id` = NEW.`id` AND d.`event` = 'job.' || NEW.`status`
				AND d.`status` = 'pending' AND d.`attempts` = 0);
END;
