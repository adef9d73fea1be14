TABLE audit.log
