UPDATE accounts SET balance = balance - $1 FROM transfers t WHERE t.acct = accounts.id
