DROP INDEX `webhook_deliveries_webhook_status_idx`;--> statement-breakpoint
CREATE INDEX `webhook_deliveries_pick_idx` ON `webhook_deliveries` (`webhook_id`,`status`,`last_attempt_at`,`next_attempt_at`,`id`);--> statement-breakpoint
CREATE INDEX `webhook_deliveries_marked_idx` ON `webhook_deliveries` (`webhook_id`) WHERE status = 'pending' AND (lease_until IS NOT NULL OR enqueued_until IS NOT NULL);--> statement-breakpoint
CREATE INDEX `webhook_deliveries_by_hand_idx` ON `webhook_deliveries` (`webhook_id`) WHERE status = 'pending' AND attempts = 0 AND (event = 'webhook.test' OR series_started_at IS NOT NULL);--> statement-breakpoint
-- Hand-corrected: drizzle-kit quotes an expression's parts as column names.
CREATE INDEX `webhook_deliveries_window_idx` ON `webhook_deliveries` (`status`,coalesce(`series_started_at`, `created_at`));