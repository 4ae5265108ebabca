CREATE TABLE `webhook_deliveries` (
	`id` text PRIMARY KEY NOT NULL,
	`webhook_id` text NOT NULL,
	`job_id` text,
	`event` text NOT NULL,
	`occurred_at` integer NOT NULL,
	`status` text DEFAULT 'pending' NOT NULL,
	`attempts` integer DEFAULT 0 NOT NULL,
	`next_attempt_at` integer NOT NULL,
	`lease_until` integer,
	`last_attempt_at` integer,
	`last_status_code` integer,
	`last_error` text,
	`delivered_at` integer,
	`payload` text,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`webhook_id`) REFERENCES `webhooks`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE UNIQUE INDEX `webhook_deliveries_occurrence_uq` ON `webhook_deliveries` (`webhook_id`,`job_id`,`event`,`occurred_at`);--> statement-breakpoint
CREATE INDEX `webhook_deliveries_due_idx` ON `webhook_deliveries` (`status`,`next_attempt_at`);--> statement-breakpoint
CREATE INDEX `webhook_deliveries_webhook_idx` ON `webhook_deliveries` (`webhook_id`,`created_at`);--> statement-breakpoint
CREATE TABLE `webhooks` (
	`id` text PRIMARY KEY NOT NULL,
	`user_id` text NOT NULL,
	`url` text NOT NULL,
	`secret` text NOT NULL,
	`events` text NOT NULL,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `webhooks_user_idx` ON `webhooks` (`user_id`);--> statement-breakpoint
-- The webhook outbox, written by the statement that moves a job (hand-written; drizzle-kit does not model triggers).
-- Every path that finishes or pauses a job (finalize from a runner's settle or the cron, cancel of a queued job,
-- pause, expiry while queued) is an UPDATE of jobs.status, so the event row commits exactly when the transition
-- does, with nothing for each caller to remember. OR IGNORE + the occurrence key: a retried write cannot double it.
CREATE TRIGGER `jobs_webhook_outbox` AFTER UPDATE OF `status` ON `jobs`
WHEN NEW.`status` <> OLD.`status` AND NEW.`status` IN ('completed', 'cancelled', 'failed', 'paused')
BEGIN
	INSERT OR IGNORE INTO `webhook_deliveries` (`id`, `webhook_id`, `job_id`, `event`, `occurred_at`, `status`, `attempts`, `next_attempt_at`, `created_at`)
	SELECT lower(hex(randomblob(10))), w.`id`, NEW.`id`, 'job.' || NEW.`status`, NEW.`updated_at`, 'pending', 0, NEW.`updated_at`, NEW.`updated_at`
	FROM `webhooks` w
	WHERE w.`user_id` = NEW.`user_id`
		AND EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid(w.`events`) THEN w.`events` ELSE '[]' END) e WHERE e.`value` = 'job.' || NEW.`status`);
END;
