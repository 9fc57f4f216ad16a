// topic_router: routes a request by keywords in its message text (whole words,
// case-insensitive). A local_only keyword wins over a cloud keyword.
//
// on_request input: {"messages":[...],"model":...,"metadata":{...}}
//            output: {"action":"continue"} or {"action":"route","target":"local_only"|"cloud"}
// config: local_only_keywords  newline-separated (a TOML list in the manifest)
//         cloud_keywords       newline-separated
import { configList, containsWord, inputString, normalize, setOutput } from "./extism";
import { messageText } from "./json";

function anyWord(text: string, words: string[]): bool {
  for (let i = 0; i < words.length; i++) if (containsWord(text, words[i])) return true;
  return false;
}

export function on_request(): i32 {
  const text = normalize(messageText(inputString()));
  if (anyWord(text, configList("local_only_keywords"))) {
    setOutput('{"action":"route","target":"local_only"}');
  } else if (anyWord(text, configList("cloud_keywords"))) {
    setOutput('{"action":"route","target":"cloud"}');
  } else {
    setOutput('{"action":"continue"}');
  }
  return 0;
}
