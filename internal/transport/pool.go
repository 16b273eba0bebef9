package transport

import "sync"

// workerPool runs connection work on a bounded set of goroutines. push never
// blocks: a connection is queued at most once at a time (its running flag),
// so the queue is bounded by the number of connections.
type workerPool struct {
	mu     sync.Mutex // guards the following
	cond   sync.Cond
	queue  []*Conn
	head   int
	closed bool
	wg     sync.WaitGroup
}

func newWorkerPool(n int) *workerPool {
	p := &workerPool{}
	p.cond.L = &p.mu
	p.wg.Add(n)
	for i := 0; i < n; i++ {
		go p.work()
	}
	return p
}

func (p *workerPool) push(c *Conn) {
	p.mu.Lock()
	p.queue = append(p.queue, c)
	p.mu.Unlock()
	p.cond.Signal()
}

func (p *workerPool) pop() *Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.head == len(p.queue) {
		if p.closed {
			return nil
		}
		p.cond.Wait()
	}
	c := p.queue[p.head]
	p.queue[p.head] = nil
	p.head++
	if p.head == len(p.queue) {
		p.queue, p.head = p.queue[:0], 0
	} else if p.head > 1024 && p.head > len(p.queue)/2 {
		n := copy(p.queue, p.queue[p.head:])
		clear(p.queue[n:])
		p.queue, p.head = p.queue[:n], 0
	}
	return c
}

func (p *workerPool) work() {
	defer p.wg.Done()
	for {
		c := p.pop()
		if c == nil {
			return
		}
		c.run()
	}
}

// close stops the workers once the queue is empty.
func (p *workerPool) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cond.Broadcast()
	p.wg.Wait()
}
