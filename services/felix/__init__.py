"""Felix: per node, turns policy and endpoints into nftables rules, sets, routes and interface settings."""
