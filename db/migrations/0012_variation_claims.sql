ALTER TABLE `variations` ADD `claims` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
-- Running claims keep their owners: a runner's attempt number was `attempts` until now, and is `claims` from here on.
UPDATE `variations` SET `claims` = `attempts`;
