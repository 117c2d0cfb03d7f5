-- The training table: one row per impression from start_date to end_date (DATE parameters),
-- labelled 1 if it was clicked, with the item's category, title and age.
-- Its columns are exactly what trainer/config.py's defaults read.
--
--   fab dataset --sql sql/training_table.sql \
--       --param start_date=2026-10-01 --param end_date=2026-10-31 \
--       --dest 'gs://BUCKET/datasets/ctr-2026-10/train-*.json'
--
-- Raw tables (dataset raw_events in the query's project):
--   impressions(impression_id STRING, event_time TIMESTAMP, publisher_id STRING, item_id STRING,
--               country STRING, platform STRING, position INT64)
--   clicks(impression_id STRING, click_time TIMESTAMP)     -- several clicks may share an impression
--   items(item_id STRING, category STRING, title STRING, published_at TIMESTAMP)
SELECT
  imp.impression_id,
  imp.event_time,
  imp.publisher_id,
  imp.item_id,
  item.category,
  imp.country,
  imp.platform,
  EXTRACT(HOUR FROM imp.event_time) AS hour,
  EXTRACT(DAYOFWEEK FROM imp.event_time) AS day_of_week,  -- 1 = Sunday
  imp.position,
  ROUND(TIMESTAMP_DIFF(imp.event_time, item.published_at, SECOND) / 3600, 2) AS item_age_hours,
  item.title,
  IF(clicked.impression_id IS NULL, 0, 1) AS is_click
FROM raw_events.impressions AS imp
JOIN raw_events.items AS item
  ON item.item_id = imp.item_id
-- DISTINCT: a double click is still one clicked impression, not two rows.
LEFT JOIN (SELECT DISTINCT impression_id FROM raw_events.clicks) AS clicked
  ON clicked.impression_id = imp.impression_id
WHERE DATE(imp.event_time) BETWEEN @start_date AND @end_date
