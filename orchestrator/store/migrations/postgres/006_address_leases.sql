-- Guest addresses handed out from the bhyve driver's per-link address pools
-- (orchestrator/drivers/bhyve_net.py). A row is one address held by one VM;
-- the primary key makes two VMs sharing an address impossible, whichever
-- host or process asks. Released when the VM is torn down; reconciliation
-- finds the VMs of leftover rows of its host and tears them down too.
CREATE TABLE address_leases (
    pool TEXT NOT NULL,                      -- the pool's name (its CIDR unless named)
    address TEXT NOT NULL,                   -- the guest address, without prefix length
    host TEXT NOT NULL,                      -- the node whose VM holds it
    vm_name TEXT NOT NULL,
    leased_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (pool, address)
);
CREATE UNIQUE INDEX address_leases_by_vm ON address_leases (host, vm_name);
