// prompt_guard: rejects a request whose message text contains a configured phrase
// (case-insensitive, whitespace-normalised), e.g. prompt-injection openers.
//
// on_request input: {"messages":[...],"model":...,"metadata":{...}}
//            output: {"action":"continue"} or {"action":"reject","status":400,"message":"..."}
// config: phrases  newline-separated list (a TOML list in the manifest)
//         status   HTTP status for the rejection (default 400)
import { config, configList, containsWord, inputString, normalize, quote, setOutput } from "./extism";
import { messageText } from "./json";

export function on_request(): i32 {
  const text = normalize(messageText(inputString()));
  const phrases = configList("phrases");
  for (let i = 0; i < phrases.length; i++) {
    if (containsWord(text, phrases[i])) {
      const status = config("status", "400");
      const message = "request blocked by prompt_guard: it contains the phrase " + quote(phrases[i]).replaceAll('"', "'");
      setOutput('{"action":"reject","status":' + status + ',"message":' + quote(message) + "}");
      return 0;
    }
  }
  setOutput('{"action":"continue"}');
  return 0;
}
