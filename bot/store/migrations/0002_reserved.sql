-- Placeholder for migration 0002, which is developed on another branch: delete this file
-- when that branch's 0002 is merged (the loader refuses two files numbered 0002).
SELECT 1;
