ALTER TABLE public.category OWNER TO postgres
