SELECT 1 /* ; DROP TABLE users; /* nested */ still comment */ -- ; DELETE FROM t
