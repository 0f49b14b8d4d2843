-- wrk script for scripts/bench_ingest: replays pre-signed PixVerse webhooks, each once.
--
--   wrk -t1 -c16 -d10s -s scripts/bench_ingest.lua URL -- REQUESTS_FILE START [cycle]
--
-- REQUESTS_FILE has one request per line: timestamp TAB nonce TAB signature TAB body.
-- Requests are used in order from line START; without "cycle" running past the end sends
-- the last one again (a replayed nonce, answered 409, so the script's caller notices), with
-- "cycle" it starts over (for an endpoint that does not check nonces). One thread only: the
-- position is per thread. done() prints one RESULT line for the caller to parse.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

requests = {}
position = 1
count = 0
cycle = false
sent = 0
ok = 0
other = 0

function init(args)
   for line in io.lines(args[1]) do
      local ts, nonce, sig, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      count = count + 1
      requests[count] = wrk.format("POST", "/webhooks/pixverse", {
         ["Host"] = wrk.headers["Host"],
         ["Content-Type"] = "application/json",
         ["Webhook-Timestamp"] = ts,
         ["Webhook-Nonce"] = nonce,
         ["Webhook-Signature"] = sig,
      }, body)
   end
   position = tonumber(args[2])
   cycle = args[3] == "cycle"
end

function request()
   if position > count then
      if cycle then position = 1 else position = count end
   end
   local r = requests[position]
   position = position + 1
   sent = sent + 1
   return r
end

function response(status, headers, body)
   if status == 200 and body == "ok" then
      ok = ok + 1
   else
      other = other + 1
   end
end

function done(summary, latency, requests_)
   local s_ok, s_other, s_sent, next_position = 0, 0, 0, 0
   for _, thread in ipairs(threads) do
      s_ok = s_ok + thread:get("ok")
      s_other = s_other + thread:get("other")
      s_sent = s_sent + thread:get("sent")
      next_position = math.max(next_position, thread:get("position"))
   end
   local e = summary.errors
   io.write(string.format(
      "RESULT requests=%d duration_us=%d ok=%d other=%d sent=%d next=%d " ..
      "p50_us=%d p90_us=%d p99_us=%d max_us=%d errors=%d\n",
      summary.requests, summary.duration, s_ok, s_other, s_sent, next_position,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      e.connect + e.read + e.write + e.status + e.timeout))
end
