SELECT now(), random()
