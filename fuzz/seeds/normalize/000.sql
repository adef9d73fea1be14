SELECT u.id, o.total FROM public.users u JOIN orders o ON o.user_id = u.id WHERE u.id = $1
