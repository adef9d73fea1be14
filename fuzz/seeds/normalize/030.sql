SELECT current_setting('app.tenant')
