ALTER TABLE `webhooks` ADD `failures` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `webhooks` ADD `held_until` integer;--> statement-breakpoint
-- Deliveries redelivered before 0016 (attempts reset, an attempt on record) start their 24-hour window now, not at
-- their event: without this the first expiry after the deploy would fail them at once.
UPDATE `webhook_deliveries` SET `series_started_at` = CAST(strftime('%s', 'now') AS INTEGER) * 1000
WHERE `status` = 'pending' AND `attempts` = 0 AND `last_attempt_at` IS NOT NULL AND `series_started_at` IS NULL;
