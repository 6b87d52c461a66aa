// Embeddings from an Ember function through the official OpenAI client.
//   EMBER_URL=http://127.0.0.1:8080 EMBER_KEY=... node embed.mjs
import OpenAI from 'openai'

const client = new OpenAI({ baseURL: process.env.EMBER_URL + '/v1', apiKey: process.env.EMBER_KEY })
const res = await client.embeddings.create({
  model: 'embeddings',
  input: ['Ember runs models on CPUs.', 'Serverless inference, warm or cold.'],
})
console.log(JSON.stringify({
  count: res.data.length,
  dims: res.data[0].embedding.length,
  prompt_tokens: res.usage.prompt_tokens,
  first: res.data[0].embedding.slice(0, 4),
}))
