ALTER TABLE public.actor OWNER TO postgres
