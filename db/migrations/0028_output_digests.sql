ALTER TABLE `variations` ADD `output_sha256` text;--> statement-breakpoint
ALTER TABLE `variations` ADD `output_crc32` integer;