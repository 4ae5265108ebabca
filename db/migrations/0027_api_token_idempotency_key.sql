ALTER TABLE `api_tokens` ADD `idempotency_key` text;--> statement-breakpoint
ALTER TABLE `api_tokens` ADD `idempotency_fingerprint` text;--> statement-breakpoint
CREATE UNIQUE INDEX `api_tokens_user_idempotency_key_idx` ON `api_tokens` (`user_id`,`idempotency_key`);