select   *  from USERS where ID = 2 /* c */
