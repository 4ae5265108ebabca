DROP INDEX `uploads_user_idx`;--> statement-breakpoint
CREATE INDEX `uploads_user_status_idx` ON `uploads` (`user_id`,`status`);--> statement-breakpoint
ALTER TABLE `users` ADD `stored_bytes` integer DEFAULT 0 NOT NULL;--> statement-breakpoint
CREATE INDEX `jobs_user_status_idx` ON `jobs` (`user_id`,`status`);--> statement-breakpoint
-- users.stored_bytes = the user's sources + outputs + unused uploads (db/queries/quotas/usage.ts storedBytesOf).
-- Kept here, in the statement that changes the bytes, so no code path can forget it. A job's cascade deletes its
-- sources and variations after the job row is gone, so their triggers find no owner and do nothing: the job's own
-- BEFORE DELETE trigger takes its bytes off first.
UPDATE `users` SET `stored_bytes` =
  (SELECT coalesce(sum(s.size), 0) FROM sources s JOIN jobs j ON j.id = s.job_id WHERE j.user_id = users.id)
  + (SELECT coalesce(sum(v.output_size), 0) FROM variations v JOIN jobs j ON j.id = v.job_id WHERE j.user_id = users.id)
  + (SELECT coalesce(sum(u.size), 0) FROM uploads u WHERE u.user_id = users.id AND u.status IN ('uploading', 'completed'));--> statement-breakpoint
CREATE TRIGGER `sources_stored_bytes_insert` AFTER INSERT ON `sources` BEGIN
  UPDATE users SET stored_bytes = stored_bytes + NEW.size WHERE id = (SELECT user_id FROM jobs WHERE id = NEW.job_id);
END;--> statement-breakpoint
CREATE TRIGGER `sources_stored_bytes_update` AFTER UPDATE OF size ON `sources` WHEN NEW.size IS NOT OLD.size BEGIN
  UPDATE users SET stored_bytes = stored_bytes + NEW.size - OLD.size WHERE id = (SELECT user_id FROM jobs WHERE id = NEW.job_id);
END;--> statement-breakpoint
CREATE TRIGGER `sources_stored_bytes_delete` AFTER DELETE ON `sources` BEGIN
  UPDATE users SET stored_bytes = stored_bytes - OLD.size WHERE id = (SELECT user_id FROM jobs WHERE id = OLD.job_id);
END;--> statement-breakpoint
CREATE TRIGGER `variations_stored_bytes_insert` AFTER INSERT ON `variations` WHEN NEW.output_size IS NOT NULL BEGIN
  UPDATE users SET stored_bytes = stored_bytes + NEW.output_size WHERE id = (SELECT user_id FROM jobs WHERE id = NEW.job_id);
END;--> statement-breakpoint
CREATE TRIGGER `variations_stored_bytes_update` AFTER UPDATE OF output_size ON `variations`
  WHEN NEW.output_size IS NOT OLD.output_size BEGIN
  UPDATE users SET stored_bytes = stored_bytes + coalesce(NEW.output_size, 0) - coalesce(OLD.output_size, 0)
    WHERE id = (SELECT user_id FROM jobs WHERE id = NEW.job_id);
END;--> statement-breakpoint
CREATE TRIGGER `variations_stored_bytes_delete` AFTER DELETE ON `variations` WHEN OLD.output_size IS NOT NULL BEGIN
  UPDATE users SET stored_bytes = stored_bytes - OLD.output_size WHERE id = (SELECT user_id FROM jobs WHERE id = OLD.job_id);
END;--> statement-breakpoint
CREATE TRIGGER `jobs_stored_bytes_delete` BEFORE DELETE ON `jobs` BEGIN
  UPDATE users SET stored_bytes = stored_bytes
    - (SELECT coalesce(sum(size), 0) FROM sources WHERE job_id = OLD.id)
    - (SELECT coalesce(sum(output_size), 0) FROM variations WHERE job_id = OLD.id)
    WHERE id = OLD.user_id;
END;--> statement-breakpoint
CREATE TRIGGER `uploads_stored_bytes_insert` AFTER INSERT ON `uploads` WHEN NEW.status IN ('uploading', 'completed') BEGIN
  UPDATE users SET stored_bytes = stored_bytes + NEW.size WHERE id = NEW.user_id;
END;--> statement-breakpoint
CREATE TRIGGER `uploads_stored_bytes_update` AFTER UPDATE OF status, size ON `uploads`
  WHEN (CASE WHEN NEW.status IN ('uploading', 'completed') THEN NEW.size ELSE 0 END)
    IS NOT (CASE WHEN OLD.status IN ('uploading', 'completed') THEN OLD.size ELSE 0 END) BEGIN
  UPDATE users SET stored_bytes = stored_bytes
    + (CASE WHEN NEW.status IN ('uploading', 'completed') THEN NEW.size ELSE 0 END)
    - (CASE WHEN OLD.status IN ('uploading', 'completed') THEN OLD.size ELSE 0 END)
    WHERE id = NEW.user_id;
END;--> statement-breakpoint
CREATE TRIGGER `uploads_stored_bytes_delete` AFTER DELETE ON `uploads` WHEN OLD.status IN ('uploading', 'completed') BEGIN
  UPDATE users SET stored_bytes = stored_bytes - OLD.size WHERE id = OLD.user_id;
END;
