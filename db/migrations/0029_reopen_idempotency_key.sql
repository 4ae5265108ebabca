ALTER TABLE `jobs` ADD `reopen_key` text;--> statement-breakpoint
ALTER TABLE `jobs` ADD `reopen_request` text;--> statement-breakpoint
ALTER TABLE `jobs` ADD `reopened_at` integer;