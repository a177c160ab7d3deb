-- wrk script: POST a realistic (~1.5 KB) JSON form submission with a unique email each time.
local counter = 0
local thread_id = math.random(1, 1000000000)
local filler = string.rep("We are evaluating lead routing for our growth team. ", 18)

request = function()
  counter = counter + 1
  local body = string.format(
    '{"work_email":"bench.%d.%d@example.com","name":"Bench Person %d",' ..
    '"company":"Example Corp","title":"Director of Engineering","country":"GB",' ..
    '"company_size":"120","phone_note":"","utm_source":"google","utm_medium":"cpc",' ..
    '"utm_campaign":"spring-launch","utm_term":"lead routing","utm_content":"ad-3",' ..
    '"gclid":"Cj0KCQiA%d","referrer":"https://www.google.com/",' ..
    '"landing_page":"https://example.com/demo?utm_source=google","marketing_consent":"yes",' ..
    '"message":"%s"}',
    thread_id, counter, counter, counter, filler)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
