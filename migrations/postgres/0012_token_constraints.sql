-- Token constraints (issue 14): which of its tenant's credentials a service token may
-- touch, as JSON ({"providers":[…],"labels":{…}}); empty text: all of them.
ALTER TABLE service_tokens ADD COLUMN constraints TEXT NOT NULL DEFAULT '';
