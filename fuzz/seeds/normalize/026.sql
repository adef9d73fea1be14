SELECT nextval('seq')
