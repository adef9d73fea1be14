DELETE FROM sessions s USING users u WHERE s.uid = u.id AND u.banned
