SELECT * FROM jobs WHERE run_at < timestamp 'today'
