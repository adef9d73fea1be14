SELECT * FROM users WHERE id = 1 -- comment
