ALTER TABLE `webhooks` ADD `idempotency_key` text;--> statement-breakpoint
CREATE UNIQUE INDEX `webhooks_user_idempotency_key_idx` ON `webhooks` (`user_id`,`idempotency_key`);