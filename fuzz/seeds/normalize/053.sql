SELECT "a""b" AS "c""""d" FROM "we""ird"
