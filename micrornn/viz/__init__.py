"""Pictures of graphs and RNNs with graphviz: any Tensor/Value graph, the unrolled and folded
network, and the gradient flow back through time.

    g = draw_graph(loss, names=model, max_steps=6)   # a graphviz.Digraph (shows inline in Jupyter)
    g = draw_program(micrornn.compile(fn), x, y)     # a compiled program, one node per primitive call
    render(g, "graph.svg")                           # .dot needs no Graphviz; svg/png/pdf run `dot`
    write_html("bptt.html")                          # step the forward and backward pass in a browser
"""
from micrornn.viz.flow import (HiddenGradNorms, as_norms, gradient_flow, hidden_grad_norms, plot_gradient_flow,
                               retain_hidden_grads)
from micrornn.viz.gates import gate_activity, gate_summary, plot_gate_activity
from micrornn.viz.graph import draw_graph
from micrornn.viz.program import draw_program
from micrornn.viz.jacobian import jacobian_norms, jacobian_view, plot_jacobian_view, recurrent_singular_values
from micrornn.viz.render import FORMATS, GraphvizNotFoundError, graph_size, output_format, render
from micrornn.viz.html import to_html, write_html
from micrornn.viz.trace import trace_backprop
from micrornn.viz.unrolled import draw_folded, draw_unrolled

__all__ = ["draw_graph", "draw_program", "draw_unrolled", "draw_folded", "render", "graph_size", "output_format", "FORMATS",
           "GraphvizNotFoundError", "gradient_flow", "retain_hidden_grads", "hidden_grad_norms", "as_norms",
           "plot_gradient_flow", "HiddenGradNorms", "to_html", "write_html", "trace_backprop",
           "gate_activity", "gate_summary", "plot_gate_activity", "jacobian_norms", "jacobian_view",
           "plot_jacobian_view", "recurrent_singular_values"]
