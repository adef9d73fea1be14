ALTER TABLE public.country OWNER TO postgres
