ALTER TABLE `variations` ADD `ssim` real;--> statement-breakpoint
ALTER TABLE `variations` ADD `psnr` real;--> statement-breakpoint
ALTER TABLE `variations` ADD `distinctness` real;--> statement-breakpoint
ALTER TABLE `variations` ADD `redraws` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE `variations` ADD `redraw_reason` text;--> statement-breakpoint
ALTER TABLE `variations` ADD `thumbnail_key` text;