-- Before purging a job deleted the consumed uploads that fed it, their rows (and parts) outlived the job forever.
-- One-time cleanup: a consumed upload no source row names belongs to a job that is gone (consuming an upload and
-- inserting its source are one transaction). Parts cascade.
DELETE FROM `uploads` WHERE `status` = 'consumed' AND `object_key` NOT IN (SELECT `object_key` FROM `sources`);
