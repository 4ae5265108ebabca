CREATE INDEX `jobs_thumbnail_key_idx` ON `jobs` (`thumbnail_key`);--> statement-breakpoint
CREATE INDEX `sources_object_key_idx` ON `sources` (`object_key`);--> statement-breakpoint
CREATE INDEX `uploads_object_key_idx` ON `uploads` (`object_key`);--> statement-breakpoint
CREATE INDEX `variations_output_key_idx` ON `variations` (`output_key`);--> statement-breakpoint
CREATE INDEX `variations_thumbnail_key_idx` ON `variations` (`thumbnail_key`);