// The official @actions/artifact client as a peer, driven by the tests and the benchmark.
//   node official_client.mjs download <artifact-id> <dest-dir> <expected-digest>
//   node official_client.mjs upload <name> <root-dir> [compression-level]
// Prints one JSON line (prefixed "RESULT ") with what the client returned.
// The package lives in the peers' npm cache (KUBEBUILDX_ARTIFACT_PEERS), not in the checkout.
import fs from 'node:fs'
import path from 'node:path'
import {pathToFileURL} from 'node:url'

const peers = process.env.KUBEBUILDX_ARTIFACT_PEERS
const entry = path.join(peers, 'node_modules', '@actions', 'artifact', 'lib', 'artifact.js')
const {DefaultArtifactClient} = await import(pathToFileURL(entry).href)
const client = new DefaultArtifactClient()

function listFiles(root) {
  return fs
    .readdirSync(root, {recursive: true, withFileTypes: true})
    .filter(d => !d.isDirectory())
    .map(d => path.join(d.parentPath ?? d.path, d.name))
}

const [command, ...args] = process.argv.slice(2)
let result
if (command === 'download') {
  const [id, dest, digest] = args
  result = await client.downloadArtifact(Number(id), {path: dest, expectedHash: digest})
} else if (command === 'upload') {
  const [name, root, level] = args
  const files = listFiles(root)
  const started = process.hrtime.bigint()
  const response = await client.uploadArtifact(name, files, root, {
    compressionLevel: level === undefined ? 6 : Number(level)
  })
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  result = {...response, seconds, maxRssBytes: process.resourceUsage().maxRSS * 1024}
} else {
  throw new Error(`unknown command ${command}`)
}
console.log('RESULT ' + JSON.stringify(result))
