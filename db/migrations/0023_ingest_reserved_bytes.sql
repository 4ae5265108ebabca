ALTER TABLE `ingests` ADD `reserved_bytes` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
CREATE INDEX `ingests_user_idx` ON `ingests` (`user_id`);