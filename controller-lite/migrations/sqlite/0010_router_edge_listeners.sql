-- The edge listeners a router reported in its hello (a JSON array of URLs such as
-- "tls://er1.example:3022"), kept with its presence so that every controller of a
-- cluster serves them for a router created without `supportedProtocols`.
ALTER TABLE router_presence ADD COLUMN edge_listeners TEXT NOT NULL DEFAULT '[]';
