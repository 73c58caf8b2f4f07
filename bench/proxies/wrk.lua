-- bench/proxies/wrk.lua: wrk's script for bench/proxies/run.
--
-- wrk takes the TLS server name (SNI) and the Host header from the URL's
-- host. This script dials PB_DIAL (default 127.0.0.1) instead of resolving
-- that host, so the URL can carry the name a proxy routes on while the
-- connection goes to the proxy's loopback address and the URL's port.
-- done() writes the figures as JSON to PB_OUT.

local dial = os.getenv("PB_DIAL") or "127.0.0.1"
local out = os.getenv("PB_OUT")

function wrk.resolve(host, service)
   local addrs = wrk.lookup(dial, service)
   for i = #addrs, 1, -1 do
      if not wrk.connect(addrs[i]) then
         table.remove(addrs, i)
      end
   end
   wrk.addrs = addrs
end

function done(summary, latency, requests)
   if not out or out == "" then
      return
   end
   local e = summary.errors
   local f = assert(io.open(out, "w"))
   f:write(string.format(
      '{"requests":%d,"bytes":%d,"duration_us":%d,' ..
      '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
      '"lat_p50_us":%d,"lat_p99_us":%d}\n',
      summary.requests, summary.bytes, summary.duration,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(99)))
   f:close()
end
