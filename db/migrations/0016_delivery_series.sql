ALTER TABLE `webhook_deliveries` ADD `series_started_at` integer;--> statement-breakpoint
CREATE INDEX `webhook_deliveries_webhook_status_idx` ON `webhook_deliveries` (`webhook_id`,`status`);