ALTER TABLE `webhooks` ADD `failures` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `webhooks` ADD `held_until` integer;--> statement-breakpoint
-- Before 0016 only a redelivery could keep a delivery pending for more than 24 hours after its event (a series ran
-- at most 24 hours from its last reset). Such rows start their 24-hour window now: without this the first expiry
-- after the deploy would fail them at once.
UPDATE `webhook_deliveries` SET `series_started_at` = CAST(strftime('%s', 'now') AS INTEGER) * 1000
WHERE `status` = 'pending' AND `series_started_at` IS NULL
	AND `created_at` <= CAST(strftime('%s', 'now') AS INTEGER) * 1000 - 86400000;
