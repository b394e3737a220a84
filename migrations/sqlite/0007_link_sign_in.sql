-- Hosted sign-in step: a connect link that requires sign-in through a connector
-- remembers the browser that signed in (SHA-256 of its cv_browser cookie); only that
-- browser is shown the providers. Which connector a link requires is in `request`.

ALTER TABLE connect_links ADD COLUMN signed_in_browser BLOB;
