DROP INDEX `webhook_deliveries_pick_idx`;--> statement-breakpoint
DROP INDEX `webhook_deliveries_by_hand_idx`;--> statement-breakpoint
CREATE INDEX `webhook_deliveries_pending_idx` ON `webhook_deliveries` (`webhook_id`,`last_attempt_at`,`next_attempt_at`,`id`) WHERE status = 'pending';--> statement-breakpoint
CREATE INDEX `webhook_deliveries_hand_sent_idx` ON `webhook_deliveries` (`webhook_id`) WHERE status = 'pending' AND (event = 'webhook.test' OR series_started_at IS NOT NULL);--> statement-breakpoint
CREATE INDEX `webhook_deliveries_endpoint_failed_idx` ON `webhook_deliveries` (`webhook_id`) WHERE status = 'pending' AND attempts > 0 AND (last_status_code IS NULL OR last_status_code >= 500 OR last_status_code IN (408, 429));