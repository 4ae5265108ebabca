ALTER TABLE `uploads` ADD `idempotency_key` text;--> statement-breakpoint
CREATE UNIQUE INDEX `uploads_user_idempotency_key_idx` ON `uploads` (`user_id`,`idempotency_key`);