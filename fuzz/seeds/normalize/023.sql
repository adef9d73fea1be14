SELECT CURRENT_TIMESTAMP, current_date, current_user
