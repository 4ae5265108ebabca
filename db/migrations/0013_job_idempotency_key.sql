ALTER TABLE `jobs` ADD `idempotency_key` text;--> statement-breakpoint
CREATE UNIQUE INDEX `jobs_user_idempotency_key_idx` ON `jobs` (`user_id`,`idempotency_key`);