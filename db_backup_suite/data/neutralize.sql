-- A neutralized copy (sandbox) must never write to production's backup
-- destinations nor run its schedules.
UPDATE db_backup_schedule
   SET active = false;
UPDATE db_backup_destination
   SET active = false;
