// kinesalite bound to 127.0.0.1 (its command line listens on every interface), records in memory.
// usage: node serve.js PORT   (0: a free port); prints "listening <port>" once it accepts connections
const kinesalite = require('kinesalite')
const options = { createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 50 }
const server = kinesalite(options).listen(Number(process.argv[2] || 4567), '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`)
})
process.on('SIGTERM', () => server.close(() => process.exit(0)))
// the server that started it holds its stdin: it ends with that server, however that server ends
process.stdin.on('end', () => process.exit(0))
process.stdin.resume()
