-- The throttle changes from failures per (email, ip) to reserved attempts per key (account:… / address:…).
-- Old rows are short-lived failure windows with nothing worth carrying over, so the table is recreated.
DROP TABLE `login_failures`;--> statement-breakpoint
CREATE TABLE `login_failures` (
	`key` text PRIMARY KEY NOT NULL,
	`attempts` integer NOT NULL,
	`locked_until` integer NOT NULL,
	`updated_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `login_failures_updated_idx` ON `login_failures` (`updated_at`);
