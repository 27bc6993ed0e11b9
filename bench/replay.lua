-- wrk script: replays pre-built, individually signed requests from a file, one per line:
-- <path>\t<webhook-id>\t<webhook-timestamp>\t<webhook-signature>\t<body>
-- Each wrk thread takes every Nth line so no two threads send the same delivery.
local requests = {}
local index = 0
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

function init(args)
  local file = args[1]
  local nthreads = tonumber(args[2])
  local i = 0
  for line in io.lines(file) do
    if i % nthreads == tid then
      local path, id, ts, sig, body = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)\t([^\t]+)\t(.*)$")
      requests[#requests + 1] = wrk.format("POST", path, {
        ["content-type"] = "application/json",
        ["webhook-id"] = id,
        ["webhook-timestamp"] = ts,
        ["webhook-signature"] = sig,
      }, body)
    end
    i = i + 1
  end
end

function request()
  index = index + 1
  if index > #requests then
    index = 1
  end
  return requests[index]
end
