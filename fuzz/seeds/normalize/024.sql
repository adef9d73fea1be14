SELECT * FROM jobs WHERE run_at < 'now'::timestamptz
