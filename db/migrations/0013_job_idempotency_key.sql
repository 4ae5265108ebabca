ALTER TABLE `ingests` ADD `idempotency_key` text;--> statement-breakpoint
CREATE UNIQUE INDEX `ingests_user_idempotency_key_idx` ON `ingests` (`user_id`,`idempotency_key`);--> statement-breakpoint
ALTER TABLE `jobs` ADD `idempotency_key` text;--> statement-breakpoint
CREATE UNIQUE INDEX `jobs_user_idempotency_key_idx` ON `jobs` (`user_id`,`idempotency_key`);